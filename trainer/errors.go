package trainer

import "errors"

// ErrCheckpoint is wrapped by every error about a missing, corrupt or
// mismatched checkpoint.
var ErrCheckpoint = errors.New("trainer: bad checkpoint")
