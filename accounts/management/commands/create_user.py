"""manage.py create_user: make an account from the command line."""

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from config.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a user. The password comes from a prompt, or from stdin with --password-stdin."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--staff", action="store_true", help="may use the admin")
        parser.add_argument("--superuser", action="store_true", help="has every permission")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )

    def handle(self, *args, **options):
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords differ.")
        if not password:
            raise CommandError("The password is empty.")
        try:
            user = services.user_create(
                username=options["username"],
                email=options["email"],
                password=password,
                is_staff=options["staff"],
                is_superuser=options["superuser"],
            )
        except ApplicationError as exc:
            problems = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.details.items())
            raise CommandError(f"{exc.message} {problems}".strip()) from exc
        role = "superuser" if user.is_superuser else "staff user" if user.is_staff else "user"
        self.stdout.write(self.style.SUCCESS(f"Created {role} {user.username} <{user.email}>."))
