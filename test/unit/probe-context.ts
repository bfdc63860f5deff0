import { fileURLToPath } from 'node:url';
import type { WorkerContextType } from '../../src/renderers/worker-context/host.js';

/** The framework tests' context type (test/fixtures/probe-context.mjs). */
export const PROBE: WorkerContextType = {
  name: 'probe',
  module: fileURLToPath(new URL('../fixtures/probe-context.mjs', import.meta.url)),
  options: {},
};
