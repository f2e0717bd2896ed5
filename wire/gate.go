package wire

// MaxDeviceCommitBytes bounds a device commit, headers included: the gate
// refuses a larger one (ErrTooLarge) and the edge agent packs its commits
// to fit.
const MaxDeviceCommitBytes = 64 << 10

// GateReply is the device gate's JSON answer to a commit or a .last
// request.
type GateReply struct {
	// Seq is the events stream sequence of the lane's last commit: the
	// admitted commit's, or (quarantined, .last) the one the device should
	// expect.
	Seq uint64 `json:"seq"`
	// EdgeSeq (.last) is the last local sequence of the asked epoch the
	// hub has decided, admitted or quarantined; 0 if none.
	EdgeSeq uint64 `json:"edge_seq,omitempty"`
	// Quarantined says the commit was refused and kept, with Code (a
	// safety.RejectCode) and Reason. The device is done with it.
	Quarantined bool   `json:"quarantined,omitempty"`
	Code        string `json:"code,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Error says nothing was decided: send again later (after asking
	// .last for ErrWrongLastSequence).
	Error *GateError `json:"error,omitempty"`
}

// GateError is why a commit was not decided. Its codes follow JetStream's
// where there is one, so a device speaks to both alike.
type GateError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code,omitempty"`
	Description string `json:"description"`
}

// Error codes of GateError.ErrCode.
const (
	// ErrWrongLastSequence: the expected sequence is not the lane's last
	// (JetStream's JSStreamWrongLastSequenceErr).
	ErrWrongLastSequence = 10071
	// ErrTooLarge: the commit is over MaxDeviceCommitBytes
	// (JetStream's JSStreamMessageExceedsMaximumErr).
	ErrTooLarge = 10054
)
