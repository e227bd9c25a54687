#!/usr/bin/env node
// npm start: build if needed, then run the service in this process (signals reach it directly).
'use strict';
require('./ensure-built.js');
require('../dist/main.js');
