"""LegacyMailRouter: the legacy mail tables live in the ``legacy`` database.

Installed only when LEGACY_DATABASE_URL is set (config/settings/base.py). Then the two
legacy models are read and written through the ``legacy`` alias, and migrations never
create, alter or drop them anywhere (the tables exist already). Everything else stays
in ``default`` and is never migrated into ``legacy``.
"""

LEGACY_MODELS = {"emailparameter", "emaildetail"}
LEGACY_ALIAS = "legacy"


def _is_legacy(model) -> bool:
    return model._meta.app_label == "mailqueue" and model._meta.model_name in LEGACY_MODELS


class LegacyMailRouter:
    def db_for_read(self, model, **hints):
        return LEGACY_ALIAS if _is_legacy(model) else None

    def db_for_write(self, model, **hints):
        return LEGACY_ALIAS if _is_legacy(model) else None

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "mailqueue" and model_name in LEGACY_MODELS:
            return False
        if db == LEGACY_ALIAS:
            return False
        return None
