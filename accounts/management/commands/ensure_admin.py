"""manage.py ensure_admin: the first admin, from ADMIN_USERNAME / ADMIN_PASSWORD."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts import services


class Command(BaseCommand):
    help = (
        "Create the first superuser from ADMIN_USERNAME/ADMIN_PASSWORD/ADMIN_EMAIL if it does "
        "not exist; without ADMIN_PASSWORD a password is generated and printed once."
    )

    def handle(self, *args, **options):
        user, generated = services.user_ensure_admin(
            username=settings.ADMIN_USERNAME,
            email=settings.ADMIN_EMAIL,
            password=os.environ.get("ADMIN_PASSWORD") or None,
        )
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin {user.username!r} with password: {generated}\n"
                    "  (shown only this once; change it in the admin)"
                )
            )
        else:
            self.stdout.write(f"Admin {user.username!r} is ready.")
