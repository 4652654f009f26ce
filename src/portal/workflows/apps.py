from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "portal.workflows"
    label = "workflows"
