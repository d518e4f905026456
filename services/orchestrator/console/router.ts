import express, { Router } from "express";
import { httpErrorHandler } from "../http-body-errors.ts";
import { ConsoleAssets } from "./assets.ts";
import { deskRoutes } from "./desk-routes.ts";
import { handler, requireBearer } from "./http.ts";
import type { ConsoleOptions } from "./options.ts";
import { runRoutes } from "./run-routes.ts";
import { signInRoutes } from "./sign-in.ts";

/** Largest JSON body the console API takes (a run's input, an answer, an explain request). */
const BODY_LIMIT = "256kb";

/**
 * The web console at `/console` on the orchestrator's HTTP edge: its page and browser modules, and
 * its API under `/console/api`, where everything but the sign-in page's config and the dev sign-in
 * needs a bearer token, decided by acp-policy like every other read.
 */
export function consoleRouter(options: ConsoleOptions): Router {
  const assets = new ConsoleAssets();
  const api = Router();
  api.use(express.json({ limit: BODY_LIMIT }));
  api.use(signInRoutes(options));
  api.use(requireBearer(options.log));
  api.use(runRoutes(options));
  api.use(deskRoutes(options));
  // A body over BODY_LIMIT (or not JSON): the console's JSON error, with its status.
  api.use(httpErrorHandler(options.log, ({ code, message }) => ({ error: { code, message } })));

  const router = Router();
  router.use("/console/api", api);
  router.get(
    "/console/web/:name",
    handler(options.log, async (req, res) => {
      if (!(await assets.web(String(req.params.name), req, res))) res.status(404).end();
    }),
  );
  router.get(
    "/console/vendor/:name",
    handler(options.log, async (req, res) => {
      if (!(await assets.vendor(String(req.params.name), req, res))) res.status(404).end();
    }),
  );
  router.get(
    ["/console", "/console/{*view}"],
    handler(options.log, async (req, res) => assets.page(res, req)),
  );
  return router;
}
