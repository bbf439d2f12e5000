"""Every use of Ray's private modules, in one place. No public API does these. Ray is pinned to
the range the tests cover (pyproject.toml, constraints.txt), and tests/test_distributed.py checks
the placement-group reader against a real orphaned group. Should a Ray upgrade move them anyway,
each says so once (a warning naming what it can no longer do) and turns itself off: the platform
keeps working without it, as it would without the dashboard's help."""
import functools
import logging
import warnings

_OFF = set()     # helpers that failed once: not tried again in this process


def _guarded(default):
    """Run the helper; if Ray's internals moved under it, warn once and return `default` from
    then on."""
    def wrap(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            if fn.__name__ in _OFF:
                return default
            try:
                return fn(*args, **kwargs)
            except (ImportError, AttributeError, TypeError) as e:
                _OFF.add(fn.__name__)
                warnings.warn(f"backdrop.ray_internals.{fn.__name__} is off: this Ray version moved what it "
                              f"uses ({type(e).__name__}: {e}); install the Ray version in constraints.txt",
                              RuntimeWarning, stacklevel=2)
                return default
        return guarded
    return wrap


@_guarded(default=[])
def orphaned_placement_groups():
    """Ids of this job's placement groups that still hold resources though the actor that made
    them is dead: a Train controller killed with its Tune trial before it could remove its
    workers' group. Ray Train's own cleaner finds these only through the dashboard's State API;
    this reads the GCS, which answers whenever Ray does. No public API names a group's creator."""
    import ray
    from ray.core.generated.gcs_pb2 import PlacementGroupTableData
    job, nobody = ray.get_runtime_context().get_job_id(), ray.ActorID.nil().binary()
    found = []
    for raw in ray._private.state.state._connect_and_get_accessor().get_placement_group_table():
        pg = PlacementGroupTableData.FromString(raw)
        if (pg.creator_actor_id != nobody and pg.creator_actor_dead and not pg.is_detached
                and pg.creator_job_id.hex() == job and pg.state != PlacementGroupTableData.REMOVED):
            found.append(pg.placement_group_id.hex())
    return found


@_guarded(default=None)
def quiet_report_log():
    """Ray Train 2.60 logs every report (all metrics) at INFO under a logger named after its source
    file, outside `ray.train`, so LoggingConfig does not reach it: raise its level."""
    from ray.train.v2._internal.execution import context
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def quiet_checkpoint_log():
    """Tune's function-trainable session logs every persisted checkpoint at INFO (a console line
    per epoch of every one-worker trial): raise that logger's level (a name; nothing to import)."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
