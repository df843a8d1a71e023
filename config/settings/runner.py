"""Settings of the runner (executions app): limits, sandbox, environments."""

from .env import env

SYNC_RUN_WAIT = env.float("SYNC_RUN_WAIT", default=30)
