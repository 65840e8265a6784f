"""Fake scheduler client commands that really run the submitted jobs on this machine.

pw_spawner's tests, and administrators trying the spawner without a cluster, put these commands
first on ``PATH`` (:func:`pw_spawner.testing.plugin.install_fake_scheduler`, or a
``fake_<flavour>`` fixture per flavour a module declares: ``fake_slurm``, ``fake_pbs``...), and
the spawner drives them as it drives the real ones.
They emulate what the spawner calls, exit codes and messages included, and refuse what they do
not emulate with a message saying so.

- :mod:`.store`: what every scheduler shares. The job store (JSON records under
  ``$PW_FAKE_SCHED_DIR``, ``flock``), knobs (``PW_FAKE_*``, from the command's environment or the
  state directory's ``knobs.json``), the option parsers and the command plumbing
  (``CommandError``, ``err``, ``out``).
- :mod:`.processes`: how jobs run. Submitting starts a detached supervisor per job that runs
  ``bash script`` in its own session; cancelling with a grace; pid and process-group liveness.
- one module per scheduler (:mod:`.slurm`, :mod:`.pbs` for PBS Pro and Torque, :mod:`.sge`,
  :mod:`.lsf`...), each saying in its docstring which commands and versions it emulates.
- :mod:`.cli`: the dispatcher, ``python -m pw_spawner.testing.fake [SCHEDULER] COMMAND ARGS...``.

How a scheduler's fake plugs in: add one module here, say ``lsf.py``; nothing else is edited. The
dispatcher takes every module of this package that defines ``COMMANDS`` as a scheduler (its module
name is the ``kind`` of its job records; a module without ``COMMANDS``, or named ``_x``, is a
helper), and the plugin derives its flavours, wrappers, fixtures and knobs from the same
declarations. The module defines:

- ``COMMANDS``: ``{"bsub": cmd_bsub, "bjobs": cmd_bjobs, "bkill": cmd_bkill}``, each handler taking
  the argument list and returning the exit status (or raising ``store.CommandError(rc, *lines)``
  for stderr and an exit status);
- ``FLAVORS``: ``{"lsf": {}}``, flavour name -> environment defaults its wrappers set (PBS uses
  ``{"pbs": {"PW_FAKE_PBS_FLAVOR": "pro"}, "torque": {...}}``); each flavour ``x`` gets a
  ``fake_x`` pytest fixture and is a flavour of ``install_fake_scheduler``;
- ``job_environment(job) -> dict[str, str]``: the variables a running job gets (``LSB_JOBID``...),
  called by the supervisor once ``job["node"]`` is set;
- ``KNOBS`` (optional): the ``PW_FAKE_*`` knobs it reads besides the store's (tests check that
  every knob the package reads is declared).

Its submit command builds a record with ``store.new_job(kind, name, queue, workdir)``, fills in
``stdout``/``stderr`` (and ``time_limit``, ``stage_out`` as needed) and hands it to
``processes.submit``; its queries read ``processes.load_jobs(store, kind)``; its cancel calls
``processes.cancel``. A command name two schedulers share (Grid Engine's ``qsub``) is fine: the
wrappers always name their scheduler.
"""
