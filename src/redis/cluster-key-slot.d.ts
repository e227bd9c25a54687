/** The hash slot of a key (CRC16 of its hash tag, mod 16384), as Redis Cluster and ioredis compute it. */
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string | Buffer): number;
}
