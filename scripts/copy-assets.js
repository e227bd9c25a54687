#!/usr/bin/env node
// tsc emits no Lua and no page assets: copy them beside their compiled modules, then stamp the build.
'use strict';
const { cpSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
cpSync(join(root, 'src', 'redis', 'lua'), join(root, 'dist', 'redis', 'lua'), { recursive: true });
cpSync(join(root, 'src', 'web', 'dashboard'), join(root, 'dist', 'web', 'dashboard'), { recursive: true });
writeFileSync(join(root, 'dist', '.built'), new Date().toISOString() + '\n');
