"""localstripe that keeps its objects in memory only and finds them by type.

localstripe 1.15.10 pickles its whole store to /tmp/localstripe.pickle after every write
(twice or more per request, even with --from-scratch, which only skips loading it), and
lists objects of one type, which it does for every charge it returns (its refunds), by
scanning every object it holds. Both grow with the objects a run has made: a loop of
payments fell from 15 to 3 a second within 750. Here the store is never written out and
keeps an index by type, so a long run is as fast at its end as at its start. Arguments
are localstripe's own (--port, --from-scratch).
"""
from localstripe import resources
from localstripe.errors import UserError
from localstripe.server import start

# "charge:ch_..." -> the type's objects in insertion order, as a scan of the store found
# them. Keys without a type prefix are singletons (the balance), never listed.
_by_type: dict[str, dict[str, object]] = {}


def _type_of(key):
    kind, sep, _ = key.partition(":")
    return kind if sep else None


def _set(store, key, value):
    dict.__setitem__(store, key, value)
    kind = _type_of(key)
    if kind is not None:
        _by_type.setdefault(kind, {})[key] = value


def _delete(store, key):
    dict.__delitem__(store, key)
    kind = _type_of(key)
    if kind is not None:
        _by_type.get(kind, {}).pop(key, None)


def _clear(store):
    dict.clear(store)
    _by_type.clear()


def _list_all(cls, url, limit=None, starting_after=None, **kwargs):
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    found = resources.List(url, limit=limit, starting_after=starting_after)
    found._list = list(_by_type.get(cls.object, {}).values())
    return found


resources.Store.__setitem__ = _set
resources.Store.__delitem__ = _delete
resources.Store.clear = _clear
resources.Store.dump_to_disk = lambda store: None
resources.StripeObject._api_list_all = classmethod(_list_all)

if __name__ == "__main__":
    start()
