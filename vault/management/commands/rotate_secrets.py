"""``manage.py rotate_secrets``: re-encrypt every stored secret (and SMTP password)
with the first key of SECRETS_KEYS, so the older keys can be dropped."""

from django.core.management.base import BaseCommand, CommandError

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
        self.stdout.write(f"Re-encrypted {done} secret(s) with the newest key.")
