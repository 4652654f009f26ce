from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from portal.accounts.backends import on_logged_in, on_login_failed
        from portal.accounts.sessions import on_user_logged_in

        # Every login (the login page, the admin's, tests' force_login) starts the clocks
        # of the idle and absolute session timeouts.
        user_logged_in.connect(on_user_logged_in, dispatch_uid="portal_session_start")
        # The login throttle counts failures and clears them on success, whichever form
        # (or other caller of authenticate()) was used.
        user_login_failed.connect(on_login_failed, dispatch_uid="portal_login_failed")
        user_logged_in.connect(on_logged_in, dispatch_uid="portal_login_throttle_clear")
