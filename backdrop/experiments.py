"""The MLflow experiment each command writes to unless told otherwise: one place for the names,
which the commands' defaults and help, the drivers and the report all read. (No imports: the
command lines read it before they load anything heavy.)"""
TRAIN = "backdrop"                   # platform.train
ABLATIONS = "backdrop-ablations"     # platform.ablate
SWEEPS = "backdrop-sweeps"           # platform.sweep
REPORTS = "backdrop-reports"         # platform.report --log
