"""Transfer experiments: grids of cells (grid), their typed records (cells), running them (run; side by side or on
SLURM: execution), the report of a grid (report) and the XTREME-style summary of evaluation reports (summary)."""
from .cells import CELLS, GRID_SETUPS, CellRecord, Kind, Setup, Status, best_intermediate, load_records, read_cells
from .execution import Engine, ExecutorSpec, SlurmSpec, load_executor
from .grid import FAMILIES, PRESETS, Cell, GridSpec, Preset, TargetSpec, cells, expansion_problems, load_grid
from .report import FLAG, Report, build_report, load_cells, terminal_rows
from .run import GridResult, planned, run_grid
from .summary import Summary, summarize

__all__ = ["CELLS", "FAMILIES", "FLAG", "GRID_SETUPS", "PRESETS", "Cell", "CellRecord", "Engine", "ExecutorSpec",
           "GridResult", "GridSpec", "Kind", "Preset", "Report", "Setup", "SlurmSpec", "Status", "Summary",
           "TargetSpec", "best_intermediate", "build_report", "cells", "expansion_problems", "load_cells",
           "load_executor", "load_grid", "load_records", "planned", "read_cells", "run_grid", "summarize",
           "terminal_rows"]
