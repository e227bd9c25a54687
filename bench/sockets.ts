/** The parent's side of bench/sockets-worker.ts: one child process holding subscribed sockets. */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { WorkerCommand, WorkerReply } from './sockets-worker';

export type Fired = Extract<WorkerReply, { type: 'fired' }>;
export type Opened = Extract<WorkerReply, { type: 'opened' }>;

export class SocketHolder {
  private readonly child: ChildProcess;

  constructor() {
    this.child = fork(join(__dirname, 'sockets-worker.ts'), [], {
      execArgv: ['-r', '@swc-node/register'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  private ask<T extends WorkerReply>(command: WorkerCommand): Promise<T> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`sockets worker exited (${code}) before answering ${command.type}`));
      this.child.once('exit', onExit);
      this.child.once('message', (reply: WorkerReply) => {
        this.child.off('exit', onExit);
        if (reply.type === 'error') reject(new Error(`sockets worker: ${reply.message}`));
        else resolve(reply as T);
      });
      this.child.send(command);
    });
  }

  open(args: Omit<Extract<WorkerCommand, { type: 'open' }>, 'type'>): Promise<Opened> {
    return this.ask({ type: 'open', ...args });
  }

  fire(args: Omit<Extract<WorkerCommand, { type: 'fire' }>, 'type'>): Promise<Fired> {
    return this.ask({ type: 'fire', ...args });
  }

  /** Closes every socket and ends the child; SIGKILL if it does not go within 5 s. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.send({ type: 'close' } satisfies WorkerCommand);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}
