"""User acceptance testing: `ibstream uat` runs the scenario catalogue against ibsim (or a real paper gateway),
judges each scenario on evidence from the warehouse, ibsim and the API, writes a Markdown and HTML report, records
the session in the warehouse (``uat_sessions``), and `ibstream uat --verdict` says go or no-go.

Modules: ``catalogue`` (scenarios and criteria), ``harness`` (one session of real processes), ``sessions`` (what
each session does and how its scenarios are judged), ``report`` (rendering, verdict), ``runner`` (the campaign).
"""

from tooling.uat.runner import UatOptions, UatRun, load_verdict, run_uat

__all__ = ["UatOptions", "UatRun", "load_verdict", "run_uat"]
