from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)

    class Meta:
        app_label = "testapp"
