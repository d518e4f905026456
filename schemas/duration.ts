import { z } from "zod";

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** `"250ms"`, `"5s"`, `"2m"`, `"1h"` or a number of milliseconds, parsed into milliseconds. */
export const DurationSchema = z.union(
  [
    z.number().int().nonnegative(),
    z
      .string()
      .regex(/^\d+(ms|s|m|h)$/, 'use a number followed by ms, s, m or h, for example "5s"')
      .transform((text) => {
        const [, amount, unit] = /^(\d+)(ms|s|m|h)$/.exec(text) as unknown as [
          string,
          string,
          keyof typeof UNIT_MS,
        ];
        return Number(amount) * UNIT_MS[unit];
      }),
  ],
  { error: 'use milliseconds or a number followed by ms, s, m or h, for example "5s"' },
);
