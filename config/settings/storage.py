"""Settings of the file store (storage app): local disk or S3 through django-storages.

Every value comes from the environment (see the ``# --- File storage`` section of
.env.example and docs/storage.md).
"""

from .env import DATA_DIR, env

STORAGE_BACKEND = env("STORAGE_BACKEND", default="local")  # local | s3
MEDIA_ROOT = DATA_DIR / "files"

if STORAGE_BACKEND not in ("local", "s3"):
    raise ValueError(f"STORAGE_BACKEND must be 'local' or 's3', not {STORAGE_BACKEND!r}")

if STORAGE_BACKEND == "s3":
    from boto3.s3.transfer import TransferConfig

    # Uploads are streamed in parts; at most this many parts are held in memory at once,
    # so the web process's memory does not grow with the file (bench/storage.py).
    _transfer = TransferConfig(
        multipart_chunksize=env.int("AWS_S3_PART_BYTES", default=8 * 1024 * 1024),
        max_concurrency=env.int("AWS_S3_MAX_CONCURRENCY", default=2),
    )
    _transfer.max_in_memory_upload_chunks = _transfer.max_concurrency
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME", default=""),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "access_key": env("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env("AWS_SECRET_ACCESS_KEY", default=None),
            "location": env("AWS_LOCATION", default="").strip("/"),
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
            "transfer_config": _transfer,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Largest upload (API and file_store's default), enforced while the bytes arrive.
STORAGE_MAX_UPLOAD_BYTES = env.int("STORAGE_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
# Bytes of uploaded files (not run outputs) one user may keep; 0 = no quota.
STORAGE_USER_QUOTA_BYTES = env.int("STORAGE_USER_QUOTA_BYTES", default=0)
# Longest key (prefix + "/" + generated name), in characters.
STORAGE_KEY_MAX_LENGTH = env.int("STORAGE_KEY_MAX_LENGTH", default=512)
# storage_cleanup deletes files older than this many days; 0 keeps files forever.
STORAGE_RETENTION_DAYS = env.int("STORAGE_RETENTION_DAYS", default=0)
# Objects without a row are left alone this long (an upload may be in flight).
STORAGE_ORPHAN_GRACE_SECONDS = env.int("STORAGE_ORPHAN_GRACE_SECONDS", default=3600)
# Minutes between scheduled storage_cleanup runs (django-q2 schedule); 0 = no schedule.
STORAGE_CLEANUP_MINUTES = env.int("STORAGE_CLEANUP_MINUTES", default=60)
