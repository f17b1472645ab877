"""The Class page: a teacher's classes (students, shared datasets, the queue, the board), and a student's
(join, start from a class dataset, submit a run, the board)."""
