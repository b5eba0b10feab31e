"""The course's own tools: services, doctor, exercises, feedback for learners and grades for mentors."""
