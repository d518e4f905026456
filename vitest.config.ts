import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

// Every Node.js process the tests start (services, the CLI, MCP fixture servers) inherits this and
// reuses the compiled code of the modules it loads instead of compiling them again: the CLI takes
// about a third less CPU per run, and the suite starts it hundreds of times. Set before the workers
// fork, so they inherit it too.
process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), "loom-test-compile-cache");

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Benchmarks report ratios from their own runner (`npm run bench`); they are not pass/fail tests.
    exclude: ["test/bench/**", "**/node_modules/**"],
    // Integration and end-to-end tests start nats-server and service processes.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Child processes and signal handlers are safer in forked workers than in threads.
    pool: "forks",
    // Two files at a time: most of a stack test is spent waiting on its processes, so two overlap
    // well on a 2-core machine (the default there is one at a time).
    maxWorkers: 2,
    watch: false,
    // Counts the security suite's attacks per class across workers and prints them after the run,
    // and says which nats-server binary the tests start.
    globalSetup: ["test/security/summary.ts", "test/nats-server-setup.ts"],
  },
});
