"""User acceptance testing: `ibstream uat` runs the scenario catalogue against ibsim (or a real paper gateway),
judges each scenario on evidence from the warehouse, ibsim and the API, writes a Markdown and HTML report, records
the session in the warehouse (``uat_sessions``: gateway session or ibsim rehearsal, market date, coverage), `ibstream
uat --verdict` says go or no-go over consecutive trading days (``verdict``), and `ibstream uat --sign-off` records
an acceptance of a go in ``uat_signoffs``.

Modules: ``catalogue`` (scenarios and criteria), ``harness`` (one session of real processes), ``sessions`` (what
each session does and how its scenarios are judged), ``report`` (rendering), ``plot`` (the day as SVG),
``verdict`` (go/no-go, pure), ``runner`` (the campaign, the records and the sign-off).
"""

from tooling.uat.runner import UatOptions, UatRun, load_verdict, run_uat, sign_off

__all__ = ["UatOptions", "UatRun", "load_verdict", "run_uat", "sign_off"]
