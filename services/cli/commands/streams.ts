import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { ErrorCode } from "../../../schemas/errors.ts";
import { Buckets } from "../../../schemas/subjects.ts";
import { LoomError, makeBucketWriteOnce, natsServerOptions, replicateStreams } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

const OPERATOR_USER_HINT =
  "give --nats (or NATS_URL) as nats://<user>:<password>@host:4222 for a NATS user of your own with `$JS.API.STREAM.UPDATE.>`: none of Loom's users may change a stream, policy-admin included, since an update can also add sources or a republish that read or write any stream";

/**
 * Runs `change` as the operator's own NATS user named in `nats`: a command that changes streams
 * needs one, and a user that may not is told so (NATS_AUTH_FAILED), not shown a bare violation.
 */
async function asOperator<T>(
  command: string,
  nats: string,
  change: (jsm: JetStreamManager) => Promise<T>,
): Promise<T> {
  const { user } = natsServerOptions(nats);
  if (user === undefined) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${command} changes streams: ${OPERATOR_USER_HINT}`);
  }
  const nc = await connectCli(nats);
  try {
    return await change(await jetstreamManager(nc)).catch((error: unknown) => {
      if (error instanceof Error && /permissions violation/i.test(error.message)) {
        throw new LoomError(
          ErrorCode.NATS_AUTH_FAILED,
          `NATS user ${user} may not change streams: ${OPERATOR_USER_HINT}`,
          { cause: error },
        );
      }
      throw error;
    });
  } finally {
    await nc.close();
  }
}

/**
 * `loom streams replicate <count>`: moves every existing Loom stream and bucket to `count`
 * replicas. Services only create what is absent and may never change a stream, and no Loom NATS
 * user may: this is the operator's act, as a NATS user of their own given in the URL.
 */
export async function streamsReplicateCommand(
  replicas: number,
  options: { nats: string; json: boolean },
): Promise<ExitCode> {
  const moved = await asOperator("loom streams replicate", options.nats, (jsm) =>
    replicateStreams(jsm, replicas),
  );
  if (options.json) console.log(JSON.stringify({ replicas, moved }));
  else if (moved.length === 0) console.log(`every Loom stream already has ${replicas} replica(s)`);
  else for (const name of moved) console.log(`${name} -> ${replicas} replica(s)`);
  return ExitCode.OK;
}

/**
 * `loom streams lock-pins`: makes a `loom_audit_keys` bucket made before pins were write-once
 * write-once in place, every pin kept (services never change an existing bucket). The operator's
 * act, as `streams replicate` is.
 */
export async function streamsLockPinsCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const changed = await asOperator("loom streams lock-pins", options.nats, (jsm) =>
    makeBucketWriteOnce(jsm, Buckets.AUDIT_KEYS),
  );
  if (options.json) console.log(JSON.stringify({ bucket: Buckets.AUDIT_KEYS, changed }));
  else
    console.log(
      changed
        ? `${Buckets.AUDIT_KEYS} is now write-once: every pin kept, none can be replaced`
        : `${Buckets.AUDIT_KEYS} was already write-once`,
    );
  return ExitCode.OK;
}
