import Glibc
import RAIDCore
import RAIDFS

exit(RaidfsCommand.main(CommandLine.arguments))
