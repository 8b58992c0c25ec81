package consensus

// SetQuorumForTest replaces the engine's quorum rule (every engine of the
// process) and returns a function that restores it: the harness test uses
// a simple majority to show that the simulation sees the splits a weaker
// rule allows.
func SetQuorumForTest(q func(n int) int) (restore func()) {
	old := quorumOf
	quorumOf = q
	return func() { quorumOf = old }
}

// LiePaceForTest makes the engines whose ID lie answers report, as
// proposers, the arrival times it returns instead of what they saw (a
// Byzantine proposer's reports); nil restores honesty.
func LiePaceForTest(lie func(self PeerID, r UpdateRef) (uint32, bool)) (restore func()) {
	old := paceLie
	paceLie = lie
	return func() { paceLie = old }
}
