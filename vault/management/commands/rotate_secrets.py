"""``manage.py rotate_secrets``: re-encrypt every stored secret (and what other apps
registered with vault.hooks, such as SMTP passwords) with the first key of
SECRETS_KEYS, so the older keys can be dropped."""

from django.core.management.base import BaseCommand, CommandError

from vault import crypto, hooks
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
        counts = [f"{done} secret(s)"]
        for label, rotate in hooks.rotators().items():  # other apps' values (SMTP passwords)
            try:
                counts.append(f"{rotate()} {label}")
            except crypto.DecryptionFailed as exc:
                raise CommandError(f"{label}: {exc}") from exc
        self.stdout.write(
            f"Re-encrypted {', '.join(counts[:-1])} and {counts[-1]} with the newest key."
            if len(counts) > 1
            else f"Re-encrypted {counts[0]} with the newest key."
        )
