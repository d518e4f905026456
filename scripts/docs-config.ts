import { writeFileSync } from "node:fs";
import { CONFIGURATION_DOC, renderConfigurationDoc } from "./config-reference.ts";

writeFileSync(CONFIGURATION_DOC, renderConfigurationDoc());
process.stdout.write(`wrote ${CONFIGURATION_DOC}\n`);
