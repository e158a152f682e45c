//! Plays the recorded client toward a live server.
