"""Named entries: methods, background sources and the like register under a name in one table."""


def registrar(table: dict):
    """A decorator factory: `@register("name")` files a class in `table` and tells it its name."""
    def register(name):
        def add(cls):
            table[name] = cls
            cls.name = name
            return cls
        return add
    return register
