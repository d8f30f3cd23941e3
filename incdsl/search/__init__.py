"""Architecture search over specs with choices: `load_space(path)` -> `Space`.

See `incdsl.search.choices` for the language of choices and `incdsl.search.space` for the API.
"""
from .choices import Choice
from .fastcost import Cost
from .space import Space, load_space

__all__ = ["Choice", "Cost", "Space", "load_space"]
