import Glibc
import RAIDCore
import RAIDFS

// The modes of what the daemon makes on members are its callers': no
// umask of its own comes between (DirectoryMember.processUmask).
umask(0)
exit(RaidfsCommand.main(CommandLine.arguments))
