import { describe, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import type { LoomError } from "../../services/kit/index.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";

/**
 * An attacker who controls the DNS of a name the operator allowed (a webhook or remote agent
 * host) answers with an address that a gateway, a tunnel or the host's own stack turns into an
 * internal IPv4 one, or with an internal range the list once missed. Each must be refused by the
 * allow-list's check before any request; the same names answering a public address in the same
 * spelling are the controls.
 */
const INTERNAL_ANSWERS: Record<string, string> = {
  "IPv4-compatible loopback": "::127.0.0.1",
  "IPv4-compatible private": "::10.0.0.1",
  "IPv4-mapped benchmarking": "::ffff:198.18.0.1",
  "NAT64 of loopback": "64:ff9b::127.0.0.1",
  "NAT64 of the metadata address": "64:ff9b::a9fe:a9fe",
  "NAT64 of a private address": "64:ff9b::c0a8:101",
  "local-use NAT64": "64:ff9b:1::a00:1",
  "6to4 of a private address": "2002:a00:1::1",
  "6to4 of loopback": "2002:7f00:1::",
  "6to4 of the metadata address": "2002:a9fe:a9fe::",
  "site-local": "fec0::1",
  "IPv6 multicast": "ff02::1",
  benchmarking: "198.18.0.1",
  multicast: "224.0.0.251",
  reserved: "240.0.0.1",
  "limited broadcast": "255.255.255.255",
};

const PUBLIC_ANSWERS: Record<string, string> = {
  "NAT64 of a public address": "64:ff9b::5db8:d70e",
  "6to4 of a public address": "2002:5db8:d70e::1",
  "IPv4-mapped public": "::ffff:93.184.215.14",
  "public IPv4 beside the benchmarking range": "198.20.0.1",
};

/** An allow-list of one allowed name that resolves to `address`, as the attacker's DNS answers. */
const listResolvingTo = (address: string) =>
  OutboundAllowList.parse(OutboundTargets.WEBHOOK, ["https://hooks.example.com/"], async () => [address]);

describe("security - outbound requests to a name whose DNS answers an internal address in any form", () => {
  it("outbound requests - NAT64, 6to4, IPv4-compatible, site-local, multicast and reserved answers are refused", async () => {
    for (const [what, address] of Object.entries(INTERNAL_ANSWERS)) {
      await attack(AttackClass.OUTBOUND_REQUESTS, `allowed name answering ${what} (${address})`, async () => {
        const refused = await listResolvingTo(address)
          .check("https://hooks.example.com/run")
          .then(
            () => undefined,
            (error: LoomError) => error,
          );
        return refused?.code === ErrorCode.WEBHOOK_REFUSED && refused.message.includes(address);
      });
    }
    for (const [what, address] of Object.entries(PUBLIC_ANSWERS)) {
      await control(`allowed name answering ${what} (${address}) passes the check`, async () =>
        listResolvingTo(address)
          .check("https://hooks.example.com/run")
          .then(
            () => true,
            () => false,
          ),
      );
    }
  });
});
