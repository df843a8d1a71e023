"""Models of the mailqueue app.

Two models sit on the legacy tables with their exact names (``tbl_EMailParameters``,
``Digital_Emaildetails``). Without ``LEGACY_DATABASE_URL`` they are managed and live
in the default database; with it they are unmanaged and the router sends them to the
``legacy`` alias. The service's own bookkeeping (state, config, parameter-set health)
lives in normal models in the default database.
"""

from django.conf import settings
from django.db import models

LEGACY_MANAGED = not settings.LEGACY_DATABASE_URL


class SendFlag(models.TextChoices):
    """Every value ``Digital_Emaildetails.dd_SendFlag`` may hold (the one place)."""

    WAITING = "N", "Waiting (new, or waiting for a retry)"
    SENT = "Y", "Sent"
    FAILED = "F", "Failed for good (permanent error, or retries used up)"


class SslFlag(models.TextChoices):
    """Every value ``tbl_EMailParameters.SMTPSSLFlag`` may hold (the one place; blank is
    read as ``N``)."""

    YES = "Y", "Y: STARTTLS (implicit TLS on port 465)"
    TLS = "T", "T: STARTTLS (implicit TLS on port 465)"
    SSL = "S", "S: implicit TLS"
    NO = "N", "N: plain"


class EmailParameter(models.Model):
    """One SMTP parameter set of ``tbl_EMailParameters``, keyed by ParamCode.

    ``SMTPSSLFlag``: ``Y``/``T`` STARTTLS (implicit TLS when the port is 465),
    ``S`` implicit TLS, ``N``/empty plain. ``IsActive``: ``Y`` active."""

    param_code = models.CharField(max_length=50, primary_key=True, db_column="ParamCode")
    smtp_server = models.CharField(max_length=255, null=True, blank=True, db_column="SMTPServer")
    smtp_port = models.IntegerField(null=True, blank=True, db_column="SMTPPort")
    smtp_account_name = models.CharField(
        max_length=255, null=True, blank=True, db_column="SMTPAccountName"
    )
    smtp_password = models.CharField(
        max_length=255, null=True, blank=True, db_column="SMTPPassword"
    )
    smtp_mail_id = models.CharField(max_length=255, null=True, blank=True, db_column="SMTPMailId")
    application_name = models.CharField(
        max_length=255, null=True, blank=True, db_column="ApplicationName"
    )
    smtp_ssl_flag = models.CharField(max_length=1, null=True, blank=True, db_column="SMTPSSLFlag")
    is_active = models.CharField(max_length=1, null=True, blank=True, db_column="IsActive")

    class Meta:
        managed = LEGACY_MANAGED
        db_table = "tbl_EMailParameters"
        ordering = ["param_code"]
        verbose_name = "SMTP parameter set"

    def __str__(self) -> str:
        return self.param_code

    @property
    def active(self) -> bool:
        return (self.is_active or "").upper() == "Y"


class EmailDetail(models.Model):
    """One queued e-mail of ``Digital_Emaildetails`` (``dd_srno`` is an IDENTITY key)."""

    srno = models.AutoField(primary_key=True, db_column="dd_srno")
    document = models.BinaryField(null=True, blank=True, db_column="dd_document")
    filename = models.CharField(max_length=255, null=True, blank=True, db_column="dd_filename")
    to_emails = models.CharField(max_length=500, null=True, blank=True, db_column="dd_toEmailid")
    cc_emails = models.CharField(max_length=500, null=True, blank=True, db_column="dd_ccEmailid")
    subject = models.CharField(max_length=500, null=True, blank=True, db_column="dd_subject")
    body_text = models.TextField(null=True, blank=True, db_column="dd_bodyText")
    send_flag = models.CharField(
        max_length=1, default=SendFlag.WAITING, choices=SendFlag.choices, db_column="dd_SendFlag"
    )
    param_code = models.CharField(
        max_length=50, null=True, blank=True, db_column="dd_EmailParamCode"
    )
    retry_count = models.IntegerField(default=0, db_column="dd_RetryCount")
    sent_date = models.DateTimeField(null=True, blank=True, db_column="dd_SentDate")
    bounce_reason = models.CharField(
        max_length=500, null=True, blank=True, db_column="dd_BounceReason"
    )
    last_retry_date = models.DateTimeField(null=True, blank=True, db_column="dd_LastRetryDate")

    class Meta:
        managed = LEGACY_MANAGED
        db_table = "Digital_Emaildetails"
        ordering = ["-srno"]
        verbose_name = "queued e-mail"
        indexes = [
            # The processor's claim: WHERE dd_SendFlag='N' AND dd_srno > @cursor ... ORDER
            # BY dd_srno: walked in key order, it stops at the first due rows. SQL Server
            # needs the same index for READPAST (docs/mailqueue.md).
            models.Index(fields=["send_flag", "srno"], name="IX_Emaildetails_flag_srno"),
        ]

    def __str__(self) -> str:
        return f"#{self.srno} to {self.to_emails}: {self.subject}"


class IntervalUnit(models.TextChoices):
    MINUTES = "minutes", "Minutes"
    HOURS = "hours", "Hours"


class MailService(models.Model):
    """The one row (pk=1) of the service's configuration and state (default database).

    Start/stop is stored here, so it survives restarts; the django-q2 schedule that
    runs the processor exists exactly while the service is started."""

    # Configuration (the legacy service's fields)
    start_time = models.TimeField(default="00:00")
    end_time = models.TimeField(default="00:00")  # equal to start_time: all day
    interval = models.PositiveIntegerField(default=1)
    interval_unit = models.CharField(
        max_length=10, choices=IntervalUnit.choices, default=IntervalUnit.MINUTES
    )
    db_request_timeout = models.PositiveIntegerField(default=30)  # seconds
    db_connection_timeout = models.PositiveIntegerField(default=15)  # seconds
    max_retries = models.PositiveIntegerField(default=5)
    batch_size = models.PositiveIntegerField(default=200)
    # State
    is_started = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_activity = models.DateTimeField(null=True, blank=True)  # last row sent or failed
    last_run = models.DateTimeField(null=True, blank=True)  # last batch (any outcome)
    total_processed = models.BigIntegerField(default=0)
    total_sent = models.BigIntegerField(default=0)
    total_failed = models.BigIntegerField(default=0)  # rows that became F
    total_retried = models.BigIntegerField(default=0)  # transient failures

    class Meta:
        verbose_name = "mail service"

    def __str__(self) -> str:
        return "Mail service"


class ParamHealth(models.Model):
    """What the processor last saw of one parameter set (default database)."""

    class Status(models.TextChoices):
        OK = "ok", "Healthy"
        TRANSIENT = "transient", "Temporary failure"
        CONFIG = "config", "Configuration error"

    param_code = models.CharField(max_length=50, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OK)
    last_error = models.CharField(max_length=500, blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["param_code"]
        verbose_name = "parameter set health"

    def __str__(self) -> str:
        return f"{self.param_code}: {self.status}"

    @property
    def healthy(self) -> bool:
        return self.status != self.Status.CONFIG
