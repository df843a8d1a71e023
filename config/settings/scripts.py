"""Settings of the script library (scripts app)."""

from .env import env

SCRIPT_MAX_UPLOAD_BYTES = env.int("SCRIPT_MAX_UPLOAD_BYTES", default=1024 * 1024)
