#!/usr/bin/env node
// npm start: build if needed, then run the service in this process.
// package.json runs it as `exec node scripts/start.js`: npm starts scripts through `sh -c`, and without the
// exec the shell stays between npm and node. npm forwards SIGTERM/SIGINT to its child only, the shell dies of
// it, and the service lives on, re-parented. With exec, node is npm's child and gets the signal itself.
'use strict';
require('./ensure-built.js');
require('../dist/main.js');
