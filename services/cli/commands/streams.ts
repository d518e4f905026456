import { jetstreamManager } from "@nats-io/jetstream";
import { replicateStreams } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

/**
 * `loom streams replicate <count>`: moves every existing Loom stream and bucket to `count`
 * replicas. Services only create what is absent and may never change a stream, so this is the
 * operator's act (as `policy-admin`) after a stack made on one server moves to a cluster.
 */
export async function streamsReplicateCommand(
  replicas: number,
  options: { nats: string; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const moved = await replicateStreams(await jetstreamManager(nc), replicas);
    if (options.json) console.log(JSON.stringify({ replicas, moved }));
    else if (moved.length === 0) console.log(`every Loom stream already has ${replicas} replica(s)`);
    else for (const name of moved) console.log(`${name} -> ${replicas} replica(s)`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
