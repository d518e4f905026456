import { ExitCode } from "../exit-codes.ts";
import {
  ensureNatsPasswords,
  ensureRoutePassword,
  natsClusterFile,
  natsUserFolders,
  natsUsersFile,
  writeNatsUserFiles,
} from "../nats-users.ts";

/**
 * `loom nats passwords`: makes the NATS users' passwords and the cluster's route password in the
 * data dir when there are none yet (random, mode 0600), and says where they are. nats-server includes
 * the combined file; each user's password is also written alone into a folder of its own, which is
 * all a service container mounts (LOOM_NATS_PASSWORD_FILE): docker compose runs this first. The
 * passwords themselves are never printed.
 */
export async function natsPasswordsCommand(options: { dataDir: string }): Promise<ExitCode> {
  await writeNatsUserFiles(options.dataDir, await ensureNatsPasswords(options.dataDir));
  await ensureRoutePassword(options.dataDir);
  console.log(`NATS users' passwords: ${natsUsersFile(options.dataDir)}`);
  console.log(`Each user's own (<user>/nats-password.env): ${natsUserFolders(options.dataDir)}`);
  console.log(`NATS cluster's route password: ${natsClusterFile(options.dataDir)}`);
  return ExitCode.OK;
}
