import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

/** One place personal data could end up: a stream message, a KV value, a log line, an output. */
export interface Place {
  where: string;
  text: string;
}

/** Every message of every JetStream stream, as text, named by stream, subject and sequence. */
export async function streamPlaces(nc: NatsConnection): Promise<Place[]> {
  const jsm = await jetstreamManager(nc);
  const places: Place[] = [];
  for await (const info of jsm.streams.list()) {
    const { name } = info.config;
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(name, { seq }).catch(() => null);
      if (message !== null)
        places.push({ where: `${name} ${message.subject} #${seq}`, text: message.string() });
    }
  }
  return places;
}

/** Every value of every KV bucket, named by bucket and key. */
export async function bucketPlaces(nc: NatsConnection): Promise<Place[]> {
  const kvm = new Kvm(nc);
  const places: Place[] = [];
  for await (const status of kvm.list()) {
    const kv = await kvm.open(status.bucket);
    for await (const key of await kv.keys()) {
      const entry = await kv.get(key);
      if (entry !== null) places.push({ where: `kv ${status.bucket} ${key}`, text: entry.string() });
    }
  }
  return places;
}

/** Every line of every service log in `dir`. */
export async function logPlaces(dir: string): Promise<Place[]> {
  const places: Place[] = [];
  for (const name of await readdir(dir)) {
    const lines = (await readFile(join(dir, name), "utf8")).split("\n");
    lines.forEach((text, index) => {
      if (text !== "") places.push({ where: `log ${name}:${index + 1}`, text });
    });
  }
  return places;
}

/** `secret in place` for every secret found anywhere. */
export function leaksIn(places: readonly Place[], secrets: readonly string[]): string[] {
  return places.flatMap((place) =>
    secrets.filter((secret) => place.text.includes(secret)).map((secret) => `${secret} in ${place.where}`),
  );
}
