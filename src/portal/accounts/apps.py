from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from portal.accounts.sessions import on_user_logged_in

        # Every login (the login page, the admin's, tests' force_login) starts the clocks
        # of the idle and absolute session timeouts.
        user_logged_in.connect(on_user_logged_in, dispatch_uid="portal_session_start")
