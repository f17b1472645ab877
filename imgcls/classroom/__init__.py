"""The classroom: a teacher's classes, the datasets shared with them (their test images held back on the server),
and the board that scores each student's model on those hidden images.

    classes   make a class, join it by code, manage its members, freeze its board
    shared    share a dataset with a class (test rows kept hidden), copy it into a student's workspace
    board     submit a run, the ranked board, a submission's score and (for the teacher) its per-image rows
    scoring   the server's scoring job: the frozen model on the hidden images, with imgcls's own code

Everything lives at server level, under `server_root()/classes/<class_id>/`, never in a user's workspace.
"""
