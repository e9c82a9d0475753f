"""Data: readers of native file formats (`readers`). Which files make up a task, and how its examples are
loaded and checked, is the tasks package's (`stepstone.tasks`, `stepstone.tasks.examples`)."""
