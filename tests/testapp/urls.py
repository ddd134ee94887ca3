"""No views: the test settings' ROOT_URLCONF.

Checks that resolve URLs (django-debug-toolbar registers one, globally, once
its tests import it) need a URLconf to look in; tests that serve views
override ROOT_URLCONF with their own.
"""

urlpatterns: list[object] = []
