#!/usr/bin/env node
// tsc emits no Lua: copy the scripts beside their compiled wrapper, then stamp the build.
'use strict';
const { cpSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
cpSync(join(root, 'src', 'redis', 'lua'), join(root, 'dist', 'redis', 'lua'), { recursive: true });
writeFileSync(join(root, 'dist', '.built'), new Date().toISOString() + '\n');
