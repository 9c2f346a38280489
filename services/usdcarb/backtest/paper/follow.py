"""The ingestion follow jobs of paper runs: started and stopped with the run.

Who: the backtest replica holding a paper run (its supervisor, ``PaperService``) asks the
ingestion service, over the mesh as ``service:backtest``, for one INGEST_MODE_FOLLOW job
per market of the run, from the run's first bar; ingestion then stores each new closed
bar, and the runner commits it. Why here and not in the strategy service: the paper run
is the thing that needs the bars and knows its markets, timeframe and first bar, and its
lifecycle (RUNNING → STOPPED/FAILED, taken over by any replica) is already supervised
here; the strategy service only records deployments.

The desired state is durable (``paper_follow_jobs``), so it is reconciled, not assumed:
- the holder of a RUNNING run makes sure each market has an ACTIVE follow job (created
  with a request id of the run, market and generation: a retried or raced creation
  returns the same job); a job that ended on its own (FAILED, or cancelled by someone)
  is replaced by the next generation, at most once per ``refollow_s``;
- once the run is no longer RUNNING, any replica cancels the jobs still ACTIVE (the
  holder at once when the run stops; the others on their next look, should the holder
  die or ingestion not answer then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from usdcarb.backtest.ingestion_client import TERMINAL, IngestionClient

log = logging.getLogger("usdcarb.backtest.paper")


@dataclass(frozen=True)
class FollowJob:
    """One follow job of a paper run."""

    exchange: str
    symbol: str
    timeframe: str
    generation: int
    job: str        # ingestJobs/{id}
    state: str      # ACTIVE, ENDED (on its own) or STOPPED (cancelled with the run)
    job_state: str  # the ingest job's JobState when last read ("" before)


class FollowJobs:
    """The follow jobs of paper runs, on the backtest schema's pool."""

    def __init__(self, pool: asyncpg.Pool, client: IngestionClient, *,
                 refollow_s: float = 30.0) -> None:
        self._pool = pool
        self._client = client
        self.refollow_s = refollow_s

    async def jobs(self, deployment: str) -> list[FollowJob]:
        rows = await self._pool.fetch(
            """SELECT exchange, symbol, timeframe, generation, job, state, job_state
               FROM paper_follow_jobs WHERE deployment = $1
               ORDER BY exchange, symbol, generation""", deployment)
        return [FollowJob(r["exchange"], r["symbol"], r["timeframe"], r["generation"],
                          r["job"], r["state"], r["job_state"] or "") for r in rows]

    async def ensure(self, deployment: str) -> list[str]:
        """Make sure every market of the RUNNING run has an ACTIVE follow job; return
        the jobs started now."""
        run = await self._pool.fetchrow(
            "SELECT series, timeframe, start_ms, state FROM paper_runs WHERE deployment = $1",
            deployment)
        if run is None or run["state"] != "RUNNING":
            return []
        for job in [j for j in await self.jobs(deployment) if j.state == "ACTIVE"]:
            state = await self._client.state(job.job)
            if state in TERMINAL:   # ended on its own: replaced below, after refollow_s
                log.warning("follow job %s of %s ended %s", job.job, deployment, state)
                await self._pool.execute(
                    """UPDATE paper_follow_jobs SET state = 'ENDED', job_state = $5,
                              end_time = now()
                       WHERE deployment = $1 AND exchange = $2 AND symbol = $3
                         AND generation = $4""",
                    deployment, job.exchange, job.symbol, job.generation, state)
        started = []
        for venue, symbol in (tuple(k) for k in run["series"]):
            last = await self._pool.fetchrow(
                """SELECT generation, state, end_time > now() - make_interval(secs => $4)
                          AS recent
                   FROM paper_follow_jobs WHERE deployment = $1 AND exchange = $2
                     AND symbol = $3 ORDER BY generation DESC LIMIT 1""",
                deployment, venue, symbol, self.refollow_s)
            if last is not None and (last["state"] == "ACTIVE" or last["recent"]):
                continue
            generation = 1 if last is None else last["generation"] + 1
            name, state = await self._client.follow(
                exchange=venue, symbol=symbol, timeframe=run["timeframe"],
                start_ms=run["start_ms"],
                request_id=f"{deployment}/follow/{venue}/{symbol}/{run['timeframe']}/"
                           f"{generation}")
            await self._pool.execute(
                """INSERT INTO paper_follow_jobs (deployment, exchange, symbol, timeframe,
                                                  generation, job, job_state)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
                deployment, venue, symbol, run["timeframe"], generation, name, state)
            started.append(name)
        return started

    async def stop(self, deployment: str) -> list[str]:
        """Cancel the run's ACTIVE follow jobs; return the jobs stopped now."""
        stopped = []
        for job in await self.jobs(deployment):
            if job.state != "ACTIVE":
                continue
            state = await self._client.cancel(job.job)
            await self._pool.execute(
                """UPDATE paper_follow_jobs SET state = 'STOPPED', job_state = $5,
                          end_time = now()
                   WHERE deployment = $1 AND exchange = $2 AND symbol = $3
                     AND generation = $4 AND state = 'ACTIVE'""",
                deployment, job.exchange, job.symbol, job.generation, state)
            stopped.append(job.job)
        return stopped

    async def stop_orphans(self) -> list[str]:
        """Cancel the ACTIVE follow jobs of runs no longer RUNNING (any replica)."""
        rows = await self._pool.fetch(
            """SELECT DISTINCT f.deployment FROM paper_follow_jobs f
               JOIN paper_runs r USING (deployment)
               WHERE f.state = 'ACTIVE' AND r.state <> 'RUNNING'""")
        stopped: list[str] = []
        for r in rows:
            stopped += await self.stop(r["deployment"])
        return stopped

