"""``manage.py rotate_secrets``: re-encrypt every stored secret (and SMTP password)
with the first key of SECRETS_KEYS, so the older keys can be dropped."""

from django.core.management.base import BaseCommand, CommandError

from mailqueue.crypto import rotate_password
from mailqueue.models import EmailParameter
from vault import crypto
from vault.models import Secret


class Command(BaseCommand):
    help = "Re-encrypt stored secrets with the newest SECRETS_KEYS key."

    def handle(self, *args, **options):
        done = 0
        for secret in Secret.objects.only("pk", "value_encrypted").iterator():
            try:
                rotated = crypto.rotate(secret.value_encrypted)
            except crypto.DecryptionFailed as exc:
                raise CommandError(f"secret {secret.pk}: {exc}") from exc
            Secret.objects.filter(pk=secret.pk).update(value_encrypted=rotated)
            done += 1
        passwords = 0
        for param in EmailParameter.objects.exclude(smtp_password__isnull=True).exclude(
            smtp_password=""
        ):
            try:
                rotated = rotate_password(param.smtp_password)
            except crypto.DecryptionFailed as exc:
                raise CommandError(f"SMTP parameters {param.pk}: {exc}") from exc
            EmailParameter.objects.filter(pk=param.pk).update(smtp_password=rotated)
            passwords += 1
        self.stdout.write(
            f"Re-encrypted {done} secret(s) and {passwords} SMTP password(s) with the newest key."
        )
