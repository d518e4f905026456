await import("./services/kit/index.ts");
await import("./services/orchestrator/run-driver.ts");
await import("./services/orchestrator/submissions.ts");
const u0 = process.cpuUsage();
const specs = process.argv.slice(2);
for (const s of specs) await import(s);
const u = process.cpuUsage(u0);
console.log(specs.join(" ").slice(0, 90).padEnd(90), "cpu", ((u.user + u.system) / 1000).toFixed(0));
