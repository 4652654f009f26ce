from django.urls import path

from portal.lines import views

app_name = "lines"
urlpatterns = [
    path("lines/", views.line_list, name="line_list"),
    path("lines/move/", views.line_move_bulk, name="line_move_bulk"),
    path("lines/orders/", views.line_orders, name="line_orders"),
    path("lines/orders/<int:order_id>/cancel/", views.line_order_cancel, name="line_order_cancel"),
    path("lines/<int:line_id>/add/", views.line_assign, name="line_assign"),
    path("lines/<int:line_id>/move/", views.line_move, name="line_move"),
    path("lines/<int:line_id>/disconnect/", views.line_disconnect, name="line_disconnect"),
]
