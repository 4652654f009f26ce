from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "portal.partners"
    label = "partners"
