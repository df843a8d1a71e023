"""The JWT token endpoint's serializer: simplejwt's, recording each sign-in.

Refused sign-ins are recorded by the audit app from Django's user_login_failed
signal, which authenticate() sends (also for this endpoint).
"""

from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from audit.services import audit_record


class AuditedTokenObtainPairSerializer(TokenObtainPairSerializer):
    def validate(self, attrs):
        """simplejwt's {access, refresh}; the sign-in is recorded (auth.login, jwt)."""
        data = super().validate(attrs)
        audit_record(
            action="auth.login",
            actor=self.user,
            target=self.user,
            details={"method": "jwt"},
            request=self.context.get("request"),
        )
        return data
