"""Names of the files a sweep keeps in its folder and in each run folder."""

# Written in a run folder, holding the config hash, once every stage of that sweep run succeeded.
DONE_MARKER = "sweep-task.done"
