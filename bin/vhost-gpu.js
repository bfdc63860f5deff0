#!/usr/bin/env node
// Installed entry point; the code is built into dist/ by `npm ci` (prepare script).
import '../dist/src/cli/main.js';
